"""HTTP routes. Each module registers one concept's routes on the Quart app."""
