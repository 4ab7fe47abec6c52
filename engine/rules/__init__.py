"""Rules and stages: YAML in, validated and compiled models out."""
