"""Source side: load a source LLM, pool its hidden states, estimate the safety directions, build a pack."""
