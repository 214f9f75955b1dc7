"""Building blocks the models share: sparse products (:mod:`.sparse`), the user-item graph
(:mod:`.bipartite`), the modality graphs and their cache (:mod:`.graphs`), the diffusion
schedule (:mod:`.diffusion`) and denoiser (:mod:`.denoiser`), the similarity gate
(:mod:`.gate`) and cached full-sort scores (:mod:`.scoring`)."""
