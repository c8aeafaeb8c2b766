"""A gateway lab: nginx, ModSecurity and CRS in front of a small API, attacked and watched by gatewatch."""
