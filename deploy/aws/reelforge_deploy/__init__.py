"""reelforge on AWS: the deployment description, the CDK stacks built from it, and the diagrams drawn from it."""
