"""Operations tests: metrics, logs, health, Docker/compose, OpenAPI and the read commands of the CLI."""
