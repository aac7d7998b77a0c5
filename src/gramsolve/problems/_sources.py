"""Where the published numbers come from: papers, repositories, hardware."""

KFAC_PAPER = (
    "Dangel, Müller & Zeinhofer, Kronecker-factored approximate curvature for "
    "physics-informed neural networks (NeurIPS 2024)"
)
KFAC_REPOSITORY = "github.com/f-dangel/kfac-pinns-experiments"
WOODBURY_PAPER = (
    "Guzmán-Cordero, Dangel, Goldshlager & Zeinhofer, Improving energy natural "
    "gradient descent through Woodbury, momentum, and randomization (NeurIPS 2025)"
)
WOODBURY_REPOSITORY = (
    "github.com/andresguzco/rla-pinns (read from its fork jefferyren/rla-pinns)"
)
ENGD_PAPER = (
    "Müller & Zeinhofer, Achieving high accuracy with PINNs via energy natural "
    "gradient descent (ICML 2023)"
)
ENGD_REPOSITORY = "github.com/MariusZeinhofer/Natural-Gradient-PINNs-ICML23"
DNGD_PAPER = (
    "Jnini & Vella, Dual natural gradient descent for scalable training of "
    "physics-informed neural networks (TMLR 2025)"
)
DNGD_REPOSITORY = "github.com/HicrestLaboratory/JAX-NG"
DSGNAR_PAPER = (
    "Webb, Jerad & Cartis, An optimisation framework for the well-conditioned "
    "training of physics-informed neural networks (DSGNAR, arXiv 2607.02194, 2026)"
)
DSGNAR_REPOSITORY = "github.com/wephy/physics-informed-neural-networks"
PAPER_GPU = "one NVIDIA RTX 6000 (24 GB), float64"


def kfac_run(experiment: str, run: str) -> str:
    return f"{KFAC_PAPER}; {KFAC_REPOSITORY}, kfac_pinns_exp/{experiment}/best_runs/ (run {run})"


def woodbury_run(experiment: str, run: str) -> str:
    return f"{WOODBURY_PAPER}; {WOODBURY_REPOSITORY}, rla_pinns/{experiment}/best_runs/ (run {run})"
