"""Email templates to messages: sandboxed Jinja, MJML compiled once, text, MIME, links, store."""
