"""What the service does, free of HTTP: accepting submissions, regrades, the gradebook and its
statistics and CSV, the roster, instructor accounts, tokens, the login throttle, and the
executed notebook's HTML. The views call these; these never import a view.
"""
