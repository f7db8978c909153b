"""How a task gets Google credentials: the credential-mode interface, with key and keyless modes."""
