"""AI judges: prompting, parsing and endpoint calls for LLM judges; reward-model scoring. Pure core."""
