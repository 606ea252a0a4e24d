"""facepipe's tests. Shared helpers and fakes live in tests.support; each folder is a package, so
test modules import them as ``from tests.support.<module> import ...`` without path changes."""
