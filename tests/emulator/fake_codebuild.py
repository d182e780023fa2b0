"""Plays CodeBuild's part against the moto emulator, which reports builds as succeeded but
builds and pushes nothing.

Waits until the deployer uploads the source bundle for TAG, which means it decided to build,
then puts an image manifest tagged TAG into the ECR repository, as a real build would push it.
Exits after that, or with status 1 after --timeout seconds.

Usage: fake_codebuild.py --endpoint URL --region REGION --bucket BUCKET --repository REPO --tag TAG
"""

import argparse
import hashlib
import json
import sys
import time

import boto3
from botocore.exceptions import ClientError


def image_manifest(tag: str) -> str:
    """A Docker image manifest (schema 2) whose config digest depends on the tag."""
    config_digest = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1024,
                "digest": config_digest,
            },
            "layers": [],
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=args.region
    )
    s3 = session.client("s3", endpoint_url=args.endpoint)
    ecr = session.client("ecr", endpoint_url=args.endpoint)
    key = f"bundles/{args.tag}.zip"

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            s3.head_object(Bucket=args.bucket, Key=key)
        except ClientError:
            time.sleep(0.1)
            continue
        ecr.put_image(
            repositoryName=args.repository, imageManifest=image_manifest(args.tag), imageTag=args.tag
        )
        print(f"fake_codebuild: pushed {args.repository}:{args.tag}", file=sys.stderr)
        return 0
    print(f"fake_codebuild: timed out waiting for s3://{args.bucket}/{key}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
