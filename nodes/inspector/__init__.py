"""The Prompt Safety Inspector: the source-LLM gate read out per prompt and category, with a chart."""
