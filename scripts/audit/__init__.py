"""Audits of the web screen: Lighthouse scores of its pages (lighthouse.py). The npm tools are pinned
by package.json and package-lock.json here and installed by scripts/bootstrap into .tools/node."""
