"""`python -m service`: serve on http://127.0.0.1:8000 (``HOST`` and ``PORT`` override)."""

import os

from service import create_app

host = os.environ.get("HOST", "127.0.0.1")
port = int(os.environ.get("PORT", "8000"))
print(f"serving on http://{host}:{port}")
create_app().run(host=host, port=port, threaded=True)
