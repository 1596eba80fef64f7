"""The pods' admin endpoints (``/admin/config``) answer only the runtime: it puts a per-shop token in each
pod's environment (readable by root alone) and sends it in this header. An agent, or any local user,
that finds a pod's port can neither read nor change its configuration behind the tools' back."""

ADMIN_HEADER = "X-Sockdrill-Admin"
ADMIN_TOKEN_ENV = "SOCKDRILL_ADMIN_TOKEN"
