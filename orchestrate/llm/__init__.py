"""LLM providers: the base interface, OpenAI, Anthropic and the offline simulator."""
