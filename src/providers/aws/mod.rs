//! AWS: configuration of the SDK clients, Secrets Manager (values and ARNs), and later ECR and ECS.
