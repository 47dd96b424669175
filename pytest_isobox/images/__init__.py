"""Images: an OCI layout store with unpacked layers, tar diffs with whiteouts, safe extraction.

- `store.ImageStore`    the API the engines use (import, resolve, commit, tags, rmi, prune, df,
                        save/load); `index.ImageIndex` records images and tags
- `blobs`, `layers`     content-addressed blobs, verified on use; ChainID-keyed lower dirs
- `tartree`, `tarsafe`  deterministic tars of trees (overlay diffs), extraction that never
                        leaves its root; `whiteouts` translates deletions between the two forms
- `archive`             `docker save` / `docker load` formats; `reference` Docker's ref grammar
"""
