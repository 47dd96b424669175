"""The demo's services, declared once: a web app and the key-value store behind it.

Both images are built from Dockerfiles in ../fixtures on a busybox base that
../fixtures/busybox-rootfs makes and isobox imports (no registry, no daemon). The two
containers share a private network, the web app finds the store by name, and only the web
app's port is published to the host.
"""

from pytest_isobox import container, image, network, wait

busybox = image(rootfs="../fixtures/busybox-rootfs", tag="isobox-demo/busybox:latest")
kv_image = image(path="../fixtures/kv", buildargs={"BASE": "{busybox}"})
web_image = image(path="../fixtures/web", buildargs={"BASE": "{busybox}"})

app_net = network()

kv = container(
    image="{kv_image}", network="{app_net}",
    mem_limit="32m", cpus=0.5, pids_limit=32,
    ready=wait.tcp(7000),
)
web = container(
    image="{web_image}", network="{app_net}", ports=["8000/tcp"],
    environment={"KV_HOST": "{kv.name}"},
    mem_limit="64m", cpus=0.5, pids_limit=64,
    ready=wait.http(8000, "/health", body="ok"),
)
