"""The HTML pages, one module per role and area (include_in_schema=False). Each page
calls the same app services as the API; form posts redirect (post-redirect-get) or
re-render with the error beside its field."""
