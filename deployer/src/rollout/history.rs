//! The result of the last `up`, `update` or `rollback`, kept as one small JSON object in the
//! bundle bucket so that `status` can show it to the next reader.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::Cx;

const KEY: &str = "deployer/last-deploy.json";

/// One finished deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDeploy {
    pub command: String,
    /// `succeeded`, `rolled_back`, `not_rolled_back` or `failed`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339, UTC.
    pub finished_at: String,
}

impl LastDeploy {
    pub fn new(command: &str, result: &str) -> Self {
        LastDeploy {
            command: command.to_owned(),
            result: result.to_owned(),
            version: None,
            task_definition: None,
            reason: None,
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// Stores the record. A failure to store it is reported and does not fail the deploy, whose
/// result is already decided.
pub async fn record(cx: &Cx, last: &LastDeploy) {
    let bucket = cx.bucket();
    let body = match serde_json::to_vec_pretty(last) {
        Ok(body) => body,
        Err(error) => return cx.progress.say(format!("warning: cannot encode the deploy record: {error}")),
    };
    let stored = cx
        .aws
        .s3
        .put_object()
        .bucket(&bucket)
        .key(KEY)
        .body(ByteStream::from(body))
        .content_type("application/json")
        .send()
        .await;
    if let Err(error) = stored {
        let error = Error::aws("store the deploy record in", format!("s3://{bucket}/{KEY}"), error);
        cx.progress.say(format!("warning: {error}: {}", crate::error::cause_chain(&error)));
    }
}

/// Reads the record, or `None` when no deploy finished yet.
pub async fn read(cx: &Cx) -> Result<Option<LastDeploy>> {
    let bucket = cx.bucket();
    let found = cx.aws.s3.get_object().bucket(&bucket).key(KEY).send().await;
    let object = match found {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
        Err(error) if error.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return Ok(None),
        Err(error) => return Err(Error::aws("read the deploy record", format!("s3://{bucket}/{KEY}"), error)),
    };
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| Error::Failed(format!("failed to read `s3://{bucket}/{KEY}`: {e}")))?
        .into_bytes();
    Ok(serde_json::from_slice(&bytes).ok())
}
