"""The holistic engine: modules, pipeline, configuration, resilience and observability."""
