"""Generator: text-guided latent-diffusion inpainting (models, text encoder, prompts, training, generation)."""
