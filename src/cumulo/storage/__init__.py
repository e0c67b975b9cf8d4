"""Object storage: buckets and objects (the S3 of Cumulo), on a local folder or on S3."""
