"""Microsoft Entra ID On-Behalf-Of token exchange for better-auth-server."""

from __future__ import annotations

from ._config import OBOApplication
from ._errors import OBO_ERROR_CODES, ErrorCode

__all__ = ["OBO_ERROR_CODES", "ErrorCode", "OBOApplication"]
