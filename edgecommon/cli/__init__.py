"""What the command-line tools share: edgectl and edge-hub's admin commands (run on the hub
host, or by edgectl as a subprocess) print, confirm, exit and write credentials the same way.

output.py (the one renderer) · exitcodes.py (errors to exit codes) · confirm.py (destructive
verbs) · context_dir.py (an operator's context directory) · audit_view.py (the audit
commands' flags, filters and output). Nothing here talks to the hub or an agent.
"""
