"""The pytest plugin (entry point ``pytest11``); see issue #3."""
