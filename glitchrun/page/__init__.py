"""The campaign page: the batch, the crowd and the learner at a glance, in a browser.

Server-rendered HTML (Jinja2 templates shipped with the package, no script, nothing fetched from elsewhere)
from the campaign state, opened read-only, and the rounds' run directories; ``job=serve`` and ``job=status
job.serve=true`` serve it on 127.0.0.1. Nothing on the page can change the campaign.
"""
