"""The pinned SAM CLI, with `--docker-network host` meaning the host network.

aws-sam-cli takes `--docker-network host` but never puts the Lambda
container on the host network (aws-sam-cli issue #4236, "sam local invoke
--docker-network host does not work"; the fix, pull request #7278, was
closed unmerged): `Container.create` only ever *connects* a created
container to a named network, and skips `host`, so the container stays on
Docker's default bridge. Where the daemon has no bridge (`--bridge=none`, as
on the project's machines), or where the function must reach a server on
the host's 127.0.0.1, the invoke cannot work.

This file changes that one method for that one case: the container is
created with `network_mode: host` and without SAM's port mapping; the
Runtime Interface Emulator inside listens on 127.0.0.1 at the port SAM then
calls (`--runtime-interface-emulator-address`), and its Runtime API gets a
free port of its own (`--runtime-api-address`; its default, 9001, is a port
the host may be using). Everything else is SAM's.

Usage: python scripts/sam_host_network.py local invoke ... --docker-network host
(any `sam` arguments; without `--docker-network host` it is plain SAM).

It refuses any SAM version but the one it was written against, because it
depends on SAM's internals: upgrading SAM (SAM_CLI_VERSION in
scripts/tools.sh) means checking this patch and changing PATCHED_SAM_VERSION.
"""

import importlib.metadata
import socket
import sys

PATCHED_SAM_VERSION = "1.170.0"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _patch() -> None:
    from samcli.local.docker.container import Container

    sam_create = Container.create

    def create(self, context):
        if self.network_id != "host":
            return sam_create(self, context)
        self._entrypoint = [
            *(self._entrypoint or []),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.rapid_port_host}",
            "--runtime-api-address",
            f"127.0.0.1:{_free_port()}",
        ]
        containers = type(self.docker_client.containers)
        plain_create = containers.create

        def create_on_host(collection, image, **kwargs):
            kwargs.pop("ports", None)
            kwargs["network_mode"] = "host"
            return plain_create(collection, image, **kwargs)

        containers.create = create_on_host
        try:
            return sam_create(self, context)
        finally:
            containers.create = plain_create

    Container.create = create


def main() -> None:
    installed = importlib.metadata.version("aws-sam-cli")
    if installed != PATCHED_SAM_VERSION:
        sys.exit(
            f"scripts/sam_host_network.py: aws-sam-cli {installed} is installed, but this host-network "
            f"workaround (aws-sam-cli #4236) was written for {PATCHED_SAM_VERSION}. Check that SAM still "
            f"needs it and that Container.create still works this way, then set PATCHED_SAM_VERSION."
        )
    _patch()
    from samcli.cli.main import cli

    sys.argv[0] = "sam"
    cli()


if __name__ == "__main__":
    main()
