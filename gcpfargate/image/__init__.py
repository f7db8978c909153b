"""The job image: build, the key guard and its scan caches, push, the repository; the credential
shim image."""
