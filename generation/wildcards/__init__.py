"""Dynamic prompts: variants `{a|b}` and a team's `__wildcards__`, expanded when jobs are
queued (the dynamicprompts library, as A1111's Dynamic Prompts extension)."""
