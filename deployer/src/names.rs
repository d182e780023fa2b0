//! Names derived from the app and stage. Together with the `deployer:*` tags they are how the
//! deployer finds its resources again without a state file.

use std::collections::BTreeMap;

use crate::manifest::Manifest;

pub const TAG_APP: &str = "deployer:app";
pub const TAG_STAGE: &str = "deployer:stage";

/// Every name and tag the deployer gives to AWS resources for one app and stage.
#[derive(Debug, Clone)]
pub struct Names {
    pub app: String,
    pub stage: String,
    /// `{app}-{stage}`, at most 28 characters (checked by the manifest).
    pub prefix: String,
    pub tags: BTreeMap<String, String>,
}

impl Names {
    pub fn new(manifest: &Manifest) -> Self {
        let app = manifest.app.name.to_string();
        let stage = manifest.app.stage.to_string();
        let mut tags = manifest.tags.clone();
        tags.insert(TAG_APP.to_owned(), app.clone());
        tags.insert(TAG_STAGE.to_owned(), stage.clone());

        Names {
            prefix: format!("{app}-{stage}"),
            app,
            stage,
            tags,
        }
    }

    /// The `Name` tag value for a part of the stack, such as `demo-local-public-a`.
    pub fn part(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// True when `tags` carry this app's and stage's ownership tags.
    pub fn owns<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let mut app = false;
        let mut stage = false;
        for (key, value) in tags {
            match key {
                TAG_APP => app = value == self.app,
                TAG_STAGE => stage = value == self.stage,
                _ => {}
            }
        }
        app && stage
    }

    pub fn cluster(&self) -> String {
        self.prefix.clone()
    }

    pub fn service(&self) -> String {
        self.prefix.clone()
    }

    pub fn task_family(&self) -> String {
        self.prefix.clone()
    }

    pub fn container(&self) -> &'static str {
        "app"
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.app, self.stage)
    }

    pub fn codebuild_project(&self) -> String {
        self.prefix.clone()
    }

    pub fn load_balancer(&self) -> String {
        self.part("alb")
    }

    pub fn target_group(&self) -> String {
        self.part("tg")
    }

    pub fn app_log_group(&self) -> String {
        format!("/ecs/{}/{}", self.app, self.stage)
    }

    pub fn build_log_group(&self) -> String {
        format!("/codebuild/{}/{}", self.app, self.stage)
    }

    /// Secrets Manager names share this prefix, so one IAM statement covers all of them.
    pub fn secret_prefix(&self) -> String {
        format!("{}/{}/", self.app, self.stage)
    }

    pub fn client_secret(&self) -> String {
        format!("{}databricks-client-secret", self.secret_prefix())
    }

    pub fn session_key(&self) -> String {
        format!("{}session-key", self.secret_prefix())
    }

    pub fn execution_role(&self) -> String {
        self.part("task-execution")
    }

    pub fn task_role(&self) -> String {
        self.part("task")
    }

    pub fn codebuild_role(&self) -> String {
        self.part("codebuild")
    }

    /// S3 bucket names are global, so the account and region keep them unique (at most 56 characters).
    pub fn bucket(&self, account_id: &str, region: &str) -> String {
        format!("{}-{account_id}-{region}", self.prefix)
    }
}
