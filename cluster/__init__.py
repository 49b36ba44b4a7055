"""Running the service on a cluster: batch cleanup job and manifests."""

__all__: list[str] = []
