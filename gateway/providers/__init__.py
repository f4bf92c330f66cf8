"""Model providers: one module per upstream API kind, all behind ``providers.base.Provider``."""
