"""Images from and to registries: the OCI distribution protocol as docker and skopeo speak it.

- `settings`: which hosts may use plain http, Docker Hub mirrors, where TLS material lives.
- `credentials`: `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers`), login/logout.
- `transport`: HTTP(S) requests with TLS like Docker, the Bearer/Basic challenge flow and
  redirects that never carry `Authorization` to another host.
- `client`: manifests and blobs of one repository.
- `pull` / `push`: moving images between a registry and the `ImageStore`.
"""
