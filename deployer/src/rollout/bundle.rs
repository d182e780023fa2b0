//! A deterministic zip of the app source: the same files give the same bytes and the same hash,
//! so an unchanged source maps to an image tag that already exists and skips the build.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::error::{Error, Result};

/// The CodeBuild buildspec, placed at the bundle's root where CodeBuild looks for it.
const BUILDSPEC: &str = include_str!("../../../templates/buildspec.yml");

/// The build settings recorded in the bundle.
const BUILD_SETTINGS: &str = ".deployer-build.json";

/// Ignore file read beside `.gitignore`, for files that are in git but must not be built.
pub const IGNORE_FILE: &str = ".deployerignore";

/// Folders never bundled: build output, dependencies, VCS data and credential folders.
const ALWAYS_EXCLUDED: &[&str] = &[".git", "target", "node_modules", ".venv", ".local", ".aws", ".ssh", ".gnupg", ".docker"];

/// File names never bundled because they usually hold credentials.
const SECRET_FILE_NAMES: &[&str] = &[
    "credentials",
    "credentials.json",
    ".npmrc",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
];

/// A bundle ready to upload.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    pub files: Vec<String>,
}

impl Bundle {
    /// The image tag for this bundle: `src-` and the first 20 hex digits of its hash.
    pub fn image_tag(&self) -> String {
        format!("src-{}", &self.sha256[..20])
    }

    /// The S3 key the bundle is uploaded to.
    pub fn object_key(&self) -> String {
        format!("bundles/{}.zip", self.image_tag())
    }
}

/// Zips `source_dir`, honouring `.gitignore` and `.deployerignore`, with fixed timestamps and
/// modes and files in sorted order. `dockerfile` (relative to `source_dir`) must be among the
/// files; its path is recorded in the bundle, so choosing another Dockerfile changes the hash.
pub fn create(source_dir: &Path, dockerfile: &Path) -> Result<Bundle> {
    let files = source_files(source_dir, dockerfile)?;

    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut names = Vec::new();
    for relative in &files {
        let name = relative.to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(source_dir.join(relative))
            .map_err(|e| Error::Input(format!("cannot read `{}` for the bundle: {e}", relative.display())))?;
        add(&mut zip, &name, &bytes, options)?;
        names.push(name);
    }
    add(&mut zip, "buildspec.yml", BUILDSPEC.as_bytes(), options)?;
    names.push("buildspec.yml".into());
    let build_settings = serde_json::json!({ "dockerfile": dockerfile.to_string_lossy().replace('\\', "/") });
    add(&mut zip, BUILD_SETTINGS, build_settings.to_string().as_bytes(), options)?;
    names.push(BUILD_SETTINGS.into());

    let bytes = zip
        .finish()
        .map_err(|e| Error::Failed(format!("failed to finish the bundle: {e}")))?
        .into_inner();
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(Bundle { bytes, sha256, files: names })
}

fn add(zip: &mut ZipWriter<Cursor<Vec<u8>>>, name: &str, bytes: &[u8], options: SimpleFileOptions) -> Result<()> {
    zip.start_file(name, options)
        .and_then(|()| zip.write_all(bytes).map_err(Into::into))
        .map_err(|e| Error::Failed(format!("failed to add `{name}` to the bundle: {e}")))
}

/// Checks that `source_dir` contains the app, its `Cargo.toml` and `dockerfile`, without bundling it,
/// so that a wrong path fails before a command creates or changes anything.
pub fn check_source(source_dir: &Path, dockerfile: &Path) -> Result<()> {
    source_files(source_dir, dockerfile).map(drop)
}

/// The files to bundle from `source_dir`, which must include `Cargo.toml` and `dockerfile`.
fn source_files(source_dir: &Path, dockerfile: &Path) -> Result<Vec<PathBuf>> {
    let files = list_files(source_dir)?;
    if !files.iter().any(|path| path == Path::new("Cargo.toml")) {
        return Err(Error::Input(format!(
            "`{}` has no `Cargo.toml`; set `build.source_dir` to the repository root that holds the app",
            source_dir.display()
        )));
    }
    if !files.iter().any(|path| path == dockerfile) {
        return Err(Error::Input(format!(
            "`build.dockerfile` `{}` is not among the files bundled from `{}`; check the path, and that no ignore file leaves it out",
            dockerfile.display(),
            source_dir.display()
        )));
    }
    Ok(files)
}

/// Relative paths of the files to bundle, sorted.
fn list_files(source_dir: &Path) -> Result<Vec<PathBuf>> {
    if !source_dir.is_dir() {
        return Err(Error::Input(format!(
            "`build.source_dir` `{}` is not a folder; set it to the repository root that holds the app",
            source_dir.display()
        )));
    }
    let mut files = Vec::new();
    let walker = WalkBuilder::new(source_dir)
        .hidden(false)
        .git_ignore(true)
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| !ALWAYS_EXCLUDED.contains(&entry.file_name().to_string_lossy().as_ref()))
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| Error::Input(format!("cannot list `{}`: {e}", source_dir.display())))?;
        if !entry.file_type().is_some_and(|kind| kind.is_file()) {
            continue;
        }
        let relative = entry.path().strip_prefix(source_dir).unwrap_or(entry.path()).to_path_buf();
        if is_secret_file(&relative) {
            continue;
        }
        files.push(relative);
    }
    files.sort();
    Ok(files)
}

/// Environment files (`.env`, `.env.local`, `.envrc`), private keys and credential files stay
/// out of the bundle even when git tracks them.
fn is_secret_file(path: &Path) -> bool {
    let name = path.file_name().map(|name| name.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.starts_with(".env")
        || [".pem", ".key", ".p12", ".pfx"].iter().any(|suffix| name.ends_with(suffix))
        || SECRET_FILE_NAMES.contains(&name.as_str())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(dir.path().join("app/src")).unwrap();
        std::fs::write(dir.path().join("app/src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(dir.path().join(".env"), "SECRET=1\n").unwrap();
        std::fs::write(dir.path().join("server.pem"), "key\n").unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[default]\n").unwrap();
        std::fs::write(dir.path().join("id_ed25519"), "key\n").unwrap();
        std::fs::write(dir.path().join(".npmrc"), "//registry/:_authToken=x\n").unwrap();
        std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
        std::fs::write(dir.path().join("target/debug/app"), "binary").unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "notes.txt\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "private\n").unwrap();
        dir
    }

    #[test]
    fn bundle_is_deterministic() {
        let dir = sample_tree();
        let first = create(dir.path(), Path::new("Dockerfile")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("app/src/main.rs"), "fn main() {}\n").unwrap();
        let second = create(dir.path(), Path::new("Dockerfile")).unwrap();
        assert_eq!(first.sha256, second.sha256);
        assert_eq!(first.bytes, second.bytes);
    }

    #[test]
    fn bundle_hash_follows_content() {
        let dir = sample_tree();
        let first = create(dir.path(), Path::new("Dockerfile")).unwrap();
        std::fs::write(dir.path().join("app/src/main.rs"), "fn main() { println!(); }\n").unwrap();
        let second = create(dir.path(), Path::new("Dockerfile")).unwrap();
        assert_ne!(first.sha256, second.sha256);
        assert_ne!(first.image_tag(), second.image_tag());
    }

    #[test]
    fn bundle_leaves_out_secrets_and_output() {
        let dir = sample_tree();
        let bundle = create(dir.path(), Path::new("Dockerfile")).unwrap();
        assert!(bundle.files.contains(&"app/src/main.rs".to_string()));
        assert!(bundle.files.contains(&"buildspec.yml".to_string()));
        assert!(!bundle.files.iter().any(|file| file == ".env"));
        assert!(!bundle.files.iter().any(|file| file.ends_with(".pem")));
        assert!(!bundle.files.iter().any(|file| file.starts_with("target/")));
        assert!(!bundle.files.iter().any(|file| file == "notes.txt"));
        assert!(!bundle.files.iter().any(|file| file.starts_with(".aws/")));
        assert!(!bundle.files.iter().any(|file| file == "id_ed25519"));
        assert!(!bundle.files.iter().any(|file| file == ".npmrc"));
    }

    #[test]
    fn bundle_hash_follows_dockerfile_choice() {
        let dir = sample_tree();
        std::fs::write(dir.path().join("Other.Dockerfile"), "FROM scratch\n").unwrap();
        let first = create(dir.path(), Path::new("Dockerfile")).unwrap();
        let second = create(dir.path(), Path::new("Other.Dockerfile")).unwrap();
        assert_ne!(first.sha256, second.sha256);
    }

    #[test]
    fn missing_dockerfile_is_rejected() {
        let dir = sample_tree();
        let error = create(dir.path(), Path::new("missing/Dockerfile")).unwrap_err().to_string();
        assert!(error.contains("`build.dockerfile` `missing/Dockerfile`"), "{error}");
    }

    #[test]
    fn bundle_without_cargo_toml_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let error = create(dir.path(), Path::new("Dockerfile")).unwrap_err().to_string();
        assert!(error.contains("no `Cargo.toml`"), "{error}");
    }
}
