//! The manifest as written: serde structs that mirror the TOML, with every value wrapped in
//! `Spanned` so that validation can point at its line and column.
//!
//! Every key is optional here, and integers are `i64` (what TOML stores), so that missing keys
//! and out-of-range numbers become validation problems with a hint, not serde errors that stop
//! at the first one. The structs do not use `#[serde(deny_unknown_fields)]` because serde
//! stops at the first unknown key. Unknown keys are found by the key walk in `keys.rs`, which
//! checks the document against `known_keys` and reports all of them at once.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub(super) type Value<T> = Option<Spanned<T>>;
pub(super) type List = Option<Spanned<Vec<Spanned<String>>>>;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawManifest {
    pub app: Option<RawApp>,
    pub aws: Option<RawAws>,
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub service: RawService,
    pub https: Option<RawHttps>,
    pub databricks: Option<RawDatabricks>,
    #[serde(default)]
    pub build: RawBuild,
    #[serde(default)]
    pub logs: RawLogs,
    #[serde(default)]
    pub deploy: RawDeploy,
    #[serde(default)]
    pub tags: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawApp {
    pub name: Value<String>,
    pub stage: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAws {
    pub region: Value<String>,
    pub account_id: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawNetwork {
    pub vpc_cidr: Value<String>,
    pub public_subnet_cidrs: List,
    pub private_subnet_cidrs: List,
    pub availability_zones: List,
    pub vpc_id: Value<String>,
    pub public_subnet_ids: List,
    pub private_subnet_ids: List,
    pub allowed_cidrs: List,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawService {
    pub cpu: Value<i64>,
    pub memory: Value<i64>,
    pub desired_count: Value<i64>,
    pub port: Value<i64>,
    pub health_check_path: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHttps {
    pub domain: Value<String>,
    pub hosted_zone_id: Value<String>,
    pub certificate_arn: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDatabricks {
    pub host: Value<String>,
    pub client_id: Value<String>,
    pub client_secret: Value<RawSecret>,
    pub serving_endpoint: Value<String>,
    pub scopes: List,
    pub redirect_path: Value<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawBuild {
    pub source_dir: Value<String>,
    pub dockerfile: Value<String>,
    pub compute_type: Value<String>,
    pub image: Value<String>,
    pub timeout_minutes: Value<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLogs {
    pub retention_days: Value<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDeploy {
    pub timeout: Value<String>,
    pub health_url: Value<String>,
}

/// Keys of the inline table form of a secret reference.
const SECRET_KEYS: &[&str] = &["env", "arn"];

/// A secret reference as written. A plain string that is not an ARN is most likely the secret
/// itself, so its value is dropped while parsing and never reaches `Debug` output or a message.
#[derive(Debug)]
pub(super) enum RawSecret {
    /// `{ env = "NAME" }`.
    Env(Spanned<String>),
    /// `{ arn = "..." }`, or a plain string that starts with `arn:`. The span is `None` for the
    /// plain string, whose position is the span of the whole value.
    Arn { value: String, span: Option<Range<usize>> },
    /// A plain string that is not an ARN.
    Literal,
    /// A table with both `env` and `arn`.
    Both,
    /// A table with neither `env` nor `arn`.
    Neither,
    /// Any other TOML type, named by `kind`.
    WrongType { kind: &'static str },
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

// Only `visit_str` and `visit_map` read values. The other methods return `WrongType` without
// the value, because serde's default error for them would quote it.
impl<'de> Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`{ env = \"NAME\" }` or `{ arn = \"arn:aws:secretsmanager:...\" }`")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSecret, E> {
        if value.starts_with("arn:") {
            return Ok(RawSecret::Arn {
                value: value.to_owned(),
                span: None,
            });
        }
        Ok(RawSecret::Literal)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut env = None;
        let mut arn = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "env" => env = Some(map.next_value::<Spanned<String>>()?),
                "arn" => arn = Some(map.next_value::<Spanned<String>>()?),
                // The key walk reports unknown keys. Skipping their values keeps them out of memory.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        Ok(match (env, arn) {
            (Some(_), Some(_)) => RawSecret::Both,
            (Some(env), None) => RawSecret::Env(env),
            (None, Some(arn)) => {
                let span = arn.span();
                RawSecret::Arn {
                    value: arn.into_inner(),
                    span: Some(span),
                }
            }
            (None, None) => RawSecret::Neither,
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
        Ok(RawSecret::WrongType { kind: "a boolean" })
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
        Ok(RawSecret::WrongType { kind: "an integer" })
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
        Ok(RawSecret::WrongType { kind: "an integer" })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
        Ok(RawSecret::WrongType { kind: "a float" })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecret, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawSecret::WrongType { kind: "an array" })
    }
}

/// The keys a table accepts.
pub(super) enum KnownKeys {
    /// Only these keys.
    Only(&'static [&'static str]),
    /// Any key, as in `[tags]`.
    Any,
}

/// Returns the keys the table at `table_path` accepts (`""` is the top level), or `None` when
/// the manifest has no table at that path.
pub(super) fn known_keys(table_path: &str) -> Option<KnownKeys> {
    let fields = match table_path {
        "" => field_names::<RawManifest>(),
        "app" => field_names::<RawApp>(),
        "aws" => field_names::<RawAws>(),
        "network" => field_names::<RawNetwork>(),
        "service" => field_names::<RawService>(),
        "https" => field_names::<RawHttps>(),
        "databricks" => field_names::<RawDatabricks>(),
        "databricks.client_secret" => SECRET_KEYS,
        "build" => field_names::<RawBuild>(),
        "logs" => field_names::<RawLogs>(),
        "deploy" => field_names::<RawDeploy>(),
        "tags" => return Some(KnownKeys::Any),
        _ => return None,
    };
    Some(KnownKeys::Only(fields))
}

/// Returns the field names that serde's derive passes to `deserialize_struct`, so the list of
/// known keys always matches the structs above.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNameRecorder { fields: &mut fields });
    fields
}

/// A deserializer that records the field list of the struct asked for and then fails.
struct FieldNameRecorder<'a> {
    fields: &'a mut &'static [&'static str],
}

impl<'de> Deserializer<'de> for FieldNameRecorder<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs record field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = fields;
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
