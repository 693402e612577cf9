"""Helpers shared by the console tests."""

from __future__ import annotations

import re

# The login form's CSRF token (a double-submit value) in the page's HTML.
LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')
