"""Web demo of r2d2lib: text-to-image search with re-ranking and image-text matching in the browser.

``make web-demo`` (or ``python -m demo.server --help``) serves it; see docs/deployment.md.
"""
