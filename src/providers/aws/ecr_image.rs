//! ECR images, referenced by task definitions and never written: each must exist. One
//! BatchGetImage per repository (up to 100 tags or digests per call), which reports missing
//! ones per id instead of failing the whole call, and gives the digest a tag resolves to. The
//! promotion rule also asks when a tag's digest was pushed (DescribeImages, one image a call).

use std::collections::BTreeMap;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::ImageIdentifier;

use super::{Counter, Counters, describe};
use crate::spec::task_definition::Image;

/// Image ids per BatchGetImage (the API's maximum).
const BATCH: usize = 100;

/// What ECR says about one image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    Found {
        digest: String,
        registry: String,
    },
    /// ECR answered that it does not exist (the text says why).
    Missing(String),
    /// The read failed.
    Unknown(String),
}

/// Checks every image of one repository.
pub async fn check(
    client: &Client,
    counters: &Counters,
    repository: &str,
    images: &[Image],
) -> BTreeMap<Image, ImageState> {
    let mut out = BTreeMap::new();
    for chunk in images.chunks(BATCH) {
        let ids: Vec<ImageIdentifier> = chunk
            .iter()
            .map(|i| {
                ImageIdentifier::builder()
                    .set_image_tag(i.tag.clone().filter(|_| i.digest.is_none()))
                    .set_image_digest(i.digest.clone())
                    .build()
            })
            .collect();
        counters.add(Counter::BatchGetImage);
        let result = client
            .batch_get_image()
            .repository_name(repository)
            .set_image_ids(Some(ids))
            .send()
            .await;
        match result {
            Ok(rsp) => {
                for image in chunk {
                    let found = rsp.images().iter().find(|found| {
                        found.image_id().is_some_and(|id| match &image.digest {
                            Some(d) => id.image_digest() == Some(d.as_str()),
                            None => id.image_tag() == image.tag.as_deref(),
                        })
                    });
                    let state = match found {
                        Some(f) => ImageState::Found {
                            digest: f
                                .image_id()
                                .and_then(|i| i.image_digest())
                                .unwrap_or_default()
                                .to_string(),
                            registry: f.registry_id().unwrap_or_default().to_string(),
                        },
                        None => {
                            let failure = rsp.failures().iter().find(|f| {
                                f.image_id().is_some_and(|id| match &image.digest {
                                    Some(d) => id.image_digest() == Some(d.as_str()),
                                    None => id.image_tag() == image.tag.as_deref(),
                                })
                            });
                            let code = failure
                                .and_then(|f| f.failure_code())
                                .map_or("ImageNotFound".to_string(), |c| c.as_str().to_string());
                            ImageState::Missing(format!(
                                "image `{}` does not exist in ECR ({code})",
                                image.reference()
                            ))
                        }
                    };
                    out.insert(image.clone(), state);
                }
            }
            Err(err) => {
                let missing_repo = err
                    .as_service_error()
                    .is_some_and(|e| e.is_repository_not_found_exception());
                for image in chunk {
                    let state = if missing_repo {
                        ImageState::Missing(format!(
                            "ECR repository `{repository}` does not exist (image `{}`)",
                            image.reference()
                        ))
                    } else {
                        ImageState::Unknown(format!("ECR BatchGetImage failed: {}", describe(&err)))
                    };
                    out.insert(image.clone(), state);
                }
            }
        }
    }
    out
}

/// The digest an image reference names now and when ECR received that digest (seconds since
/// the epoch, when ECR says): one DescribeImages. `Ok(None)` when ECR has no such image.
pub async fn pushed(
    client: &Client,
    counters: &Counters,
    image: &Image,
) -> Result<Option<(String, Option<f64>)>, String> {
    counters.add(Counter::DescribeImages);
    let id = ImageIdentifier::builder()
        .set_image_tag(image.tag.clone().filter(|_| image.digest.is_none()))
        .set_image_digest(image.digest.clone())
        .build();
    match client
        .describe_images()
        .repository_name(&image.repository)
        .image_ids(id)
        .send()
        .await
    {
        Ok(rsp) => Ok(rsp.image_details().first().map(|d| {
            (
                d.image_digest().unwrap_or_default().to_string(),
                d.image_pushed_at().map(|t| t.as_secs_f64()),
            )
        })),
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_image_not_found_exception() || e.is_repository_not_found_exception()
            }) =>
        {
            Ok(None)
        }
        Err(err) => Err(format!("ECR DescribeImages failed: {}", describe(&err))),
    }
}
