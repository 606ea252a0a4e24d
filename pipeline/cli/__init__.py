"""The `facepipe` command line: Rekognition operations through the AWS CLI v1 driver, and own commands."""
