"""GitLab: the webhook (Push, Merge Request and Note Hooks), `/deploy` notes, clone
credentials; reporting back lives in bot/reporting/gitlab.py."""
