"""The three application points (text encoder, conditioning, model), their shared inputs and the report node."""
