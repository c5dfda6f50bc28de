#!/usr/bin/env bash
# Regenerates fixtures/chat-templates/cases.json: the chat templates there rendered by
# transformers' apply_chat_template. Installs pinned transformers (no PyTorch) into .lethe/tmplenv.
set -euo pipefail
cd "$(dirname "$0")/.."
env=.lethe/tmplenv
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
fi
"$env/bin/pip" install -q transformers==4.57.1 jinja2==3.1.6
exec "$env/bin/python" scripts/render-chat-templates.py
