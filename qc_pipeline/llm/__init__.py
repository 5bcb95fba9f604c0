"""Optional LLM layer: an OpenAI-compatible client, prompts, the judge behind the `llm` rule operator and the
summary.  Nothing here is needed when ``llm.base_url`` is unset: everything then runs offline as before."""

#: Session flag: an LLM request failed or its answer was rejected, so keywords / rule levels decided.
FLAG_LLM_ERROR = "llm_error"
