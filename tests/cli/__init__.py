"""The command line: the AWS-CLI-compatible driver, local and remote mode, side by side with `aws`."""
