//! `s3mm backfill`: the objects already under a prefix, moved by the
//! deployed mover through S3 Batch Operations. This writes the CSV manifest
//! Batch Operations reads (one `bucket,key` row per object, keys
//! URL-encoded as it requires) and prints the `aws s3control create-job`
//! command that runs the mover once per object, with the manifest's ETag.
//!
//! Why Batch Operations and not `s3mm move`: one machine running `move`
//! does tens of millions of objects in hours and stops with the machine;
//! a Batch Operations job runs the same mover code at Lambda's
//! concurrency, retries `TemporaryFailure` tasks, and leaves a completion
//! report of every task.

use crate::pipeline::spinner;
use crate::s3url::{S3ObjectUrl, S3Url};
use anyhow::Context;
use aws_sdk_s3::Client;
use futures::TryStreamExt;
use indicatif::MultiProgress;
use s3mm_core::keys::encode_manifest_key;
use s3mm_core::upload::ObjectWriter;
use s3mm_core::{ListOptions, list_objects_parallel};
use serde::Serialize;
use serde_json::json;

/// Where the mover's and the role's ARNs come from.
#[derive(Debug, Clone, Default)]
pub struct BackfillTargets {
    /// The stack `sam deploy` made: its outputs name both ARNs.
    pub stack: Option<String>,
    pub function_arn: Option<String>,
    pub role_arn: Option<String>,
    pub account_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackfillPlan {
    pub source: String,
    pub objects: u64,
    pub bytes: u64,
    pub manifest: ManifestWritten,
    pub report: String,
    /// The create-job request's parts, as JSON.
    pub create_job: serde_json::Value,
    /// Shell lines that submit the job (the ARNs read from the stack's
    /// outputs when they were not given).
    pub command: String,
}

#[derive(Debug, Serialize)]
pub struct ManifestWritten {
    pub url: String,
    pub object_arn: String,
    /// As S3 returns it, without quotes (create-job wants it so).
    pub etag: String,
    pub bytes: u64,
}

/// Lists `source`, writes the manifest, and plans the job.
pub async fn backfill(
    client: &Client,
    source: &S3Url,
    manifest: &S3ObjectUrl,
    report: &S3Url,
    targets: &BackfillTargets,
    list_concurrency: usize,
    progress: &MultiProgress,
) -> anyhow::Result<BackfillPlan> {
    // Check the ARNs before listing millions of keys.
    let arns = Arns::from(targets)?;
    let listing = spinner(progress, "list");
    let mut writer = ObjectWriter::new(client, &manifest.bucket, &manifest.key).content_type("text/csv");
    let mut objects = 0u64;
    let mut bytes = 0u64;
    // The manifest itself, and reports of earlier jobs, are not objects to move.
    let skip = |key: &str| {
        (source.bucket == manifest.bucket && key == manifest.key)
            || (source.bucket == report.bucket && !report.prefix.is_empty() && key.starts_with(&report.prefix))
    };
    let mut listed =
        list_objects_parallel(client, &source.bucket, &source.prefix, ListOptions::default(), list_concurrency);
    let mut rows = String::new();
    while let Some(object) = listed.try_next().await? {
        if skip(&object.key) {
            continue;
        }
        rows.push_str(&source.bucket);
        rows.push(',');
        rows.push_str(&encode_manifest_key(&object.key));
        rows.push('\n');
        objects += 1;
        bytes += object.size;
        if rows.len() >= 1 << 20 {
            writer.write(rows.as_bytes()).await?;
            rows.clear();
            listing.set_position(objects);
        }
    }
    writer.write(rows.as_bytes()).await?;
    listing.finish_and_clear();
    anyhow::ensure!(objects > 0, "no objects under {source}: nothing to backfill (no manifest written)");
    let written = writer.finish().await?;
    let head = client
        .head_object()
        .bucket(&manifest.bucket)
        .key(&manifest.key)
        .send()
        .await
        .with_context(|| format!("reading back the manifest {manifest}"))?;
    let etag = head.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    anyhow::ensure!(!etag.is_empty(), "S3 returned no ETag for the manifest {manifest}");
    let object_arn = format!("arn:aws:s3:::{}/{}", manifest.bucket, manifest.key);
    let create_job = json!({
        "operation": {"LambdaInvoke": {"FunctionArn": arns.function.value, "InvocationSchemaVersion": "2.0",
            "UserArguments": {"source": "s3mm backfill"}}},
        "manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": object_arn, "ETag": etag}},
        "report": {"Bucket": format!("arn:aws:s3:::{}", report.bucket), "Prefix": report.prefix.trim_end_matches('/'),
            "Format": "Report_CSV_20180820", "Enabled": true, "ReportScope": "AllTasks"},
        "priority": 10,
        // The same manifest gives the same token: running the command twice
        // makes one job.
        "client_request_token": format!("s3mm-backfill-{etag}"),
    });
    let mut create_job = create_job;
    if report.prefix.is_empty() {
        // The bucket's root: create-job takes no Prefix then.
        if let Some(report) = create_job["report"].as_object_mut() {
            report.remove("Prefix");
        }
    }
    let command = arns.command(&create_job);
    Ok(BackfillPlan {
        source: source.to_string(),
        objects,
        bytes,
        manifest: ManifestWritten { url: manifest.to_string(), object_arn, etag, bytes: written.bytes },
        report: report.to_string(),
        create_job,
        command,
    })
}

/// An ARN given, or a shell variable read from the stack's outputs.
struct Arn {
    value: String,
    /// `NAME=$(aws ...)` when it is read at run time.
    lookup: Option<String>,
}

struct Arns {
    function: Arn,
    role: Arn,
    account: Arn,
}

impl Arns {
    fn from(targets: &BackfillTargets) -> anyhow::Result<Self> {
        let output = |name: &str, variable: &str, given: &Option<String>, flag: &str| -> anyhow::Result<Arn> {
            if let Some(value) = given {
                return Ok(Arn { value: value.clone(), lookup: None });
            }
            let stack = targets.stack.as_deref().ok_or_else(|| {
                anyhow::anyhow!(
                    "give --stack NAME (the stack `sam deploy` made; its outputs name the mover and the Batch \
                     Operations role) or {flag}"
                )
            })?;
            Ok(Arn {
                value: format!("${variable}"),
                lookup: Some(format!(
                    "{variable}=\"$(aws cloudformation describe-stacks --stack-name {} --query \
                     \"Stacks[0].Outputs[?OutputKey=='{name}'].OutputValue\" --output text)\"",
                    shell_word(stack)
                )),
            })
        };
        let function = output("MoverFunctionArn", "FUNCTION_ARN", &targets.function_arn, "--function-arn ARN")?;
        let role = output("BatchOperationsRoleArn", "ROLE_ARN", &targets.role_arn, "--role-arn ARN")?;
        // The account is the role's (arn:aws:iam::ACCOUNT:role/NAME) unless given.
        let account = match (&targets.account_id, role.lookup.is_none()) {
            (Some(id), _) => Arn { value: id.clone(), lookup: None },
            (None, true) => {
                let id = role.value.split(':').nth(4).filter(|id| !id.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!("--role-arn {} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", role.value)
                })?;
                Arn { value: id.to_owned(), lookup: None }
            }
            (None, false) => Arn {
                value: "$ACCOUNT_ID".to_owned(),
                lookup: Some("ACCOUNT_ID=\"$(aws sts get-caller-identity --query Account --output text)\"".to_owned()),
            },
        };
        Ok(Self { function, role, account })
    }

    /// The lookups, then the command; a value read at run time is spliced
    /// into the single-quoted JSON as `'"$NAME"'`.
    fn command(&self, job: &serde_json::Value) -> String {
        let mut lines: Vec<String> =
            [&self.function, &self.role, &self.account].iter().filter_map(|arn| arn.lookup.clone()).collect();
        let json_arg = |value: &serde_json::Value| {
            let mut text = value.to_string();
            if let Some(lookup) = &self.function.lookup {
                let variable = lookup.split('=').next().unwrap_or_default();
                text = text.replace(&format!("\"${variable}\""), &format!("\"'\"${variable}\"'\""));
            }
            format!("'{text}'")
        };
        let plain =
            |arn: &Arn| if arn.lookup.is_some() { format!("\"{}\"", arn.value) } else { shell_word(&arn.value) };
        lines.push(format!(
            "aws s3control create-job --account-id {} \\\n  --operation {} \\\n  --manifest {} \\\n  --report {} \\\n  \
             --priority {} --role-arn {} \\\n  --client-request-token {} --no-confirmation-required",
            plain(&self.account),
            json_arg(&job["operation"]),
            json_arg(&job["manifest"]),
            json_arg(&job["report"]),
            job["priority"],
            plain(&self.role),
            shell_word(job["client_request_token"].as_str().unwrap_or_default()),
        ));
        lines.join("\n")
    }
}

/// `value` as one shell word: as it is when it holds nothing the shell
/// reads, else single-quoted.
fn shell_word(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c)) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_stack_or_arns_the_error_says_what_to_give() {
        let err = Arns::from(&BackfillTargets::default()).err().expect("refused").to_string();
        assert!(err.contains("--stack NAME") && err.contains("--function-arn"), "{err}");
        let bad_role = BackfillTargets {
            function_arn: Some("arn:aws:lambda:us-east-1:123456789012:function:m".into()),
            role_arn: Some("not-an-arn".into()),
            ..BackfillTargets::default()
        };
        let err = Arns::from(&bad_role).err().expect("refused").to_string();
        assert!(err.contains("--role-arn not-an-arn"), "{err}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("s3mm-prod"), "s3mm-prod");
        assert_eq!(shell_word("it's mine"), "'it'\\''s mine'");
    }
}
