"""Styles, as AUTOMATIC1111 has them: a team's saved prompt and negative-prompt fragments,
applied to a job's prompts when it is asked for."""
