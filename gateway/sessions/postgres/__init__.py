"""The PostgreSQL store: transcripts, stored responses and admission shared by several gateway
hosts through one database (``gateway.store.url`` / ``GATEWAY_STORE_URL``)."""
