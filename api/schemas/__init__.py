"""Request and response schemas as pydantic models; the OpenAPI spec is generated from them."""
