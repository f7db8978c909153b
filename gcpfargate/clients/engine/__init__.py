"""The container engine: builds (BuildKit or classic), image exports, layers, local containers."""
