"""The pack as the real server publishes it: IDs, display names, category, descriptions, and a
tooltip on every input and output (the public contract saved workflows rely on)."""
import pytest

NODES = {
    "AMDM_MultiModelSampler": "Multi-Model Sampler",
    "AMDM_Member": "Multi-Model Member",
    "AMDM_SphericalAggregate": "Spherical Aggregate",
    "AMDM_DeviationOptimize": "Deviation Optimize",
    "AMDM_MultiModelGuider": "Multi-Model Guider",
    "AMDM_ComposePredictions": "Compose Predictions",
    "AMDM_MultiModelSweep": "Multi-Model Sweep",
    "AMDM_ModelGuidance": "Model Guidance (Autoguidance)",
    "AMDM_Superposition": "Superposition (SuperDiff)",
}

# Widget/socket order is the contract: saved workflows store widget values by position.
SAMPLER_ORDER = ["model", "positive", "negative", "members", "latent_image", "seed", "steps", "cfg", "sampler_name",
                 "scheduler", "denoise", "base_weight"]
SAMPLER_OPTIONAL = ["aggregation", "deviation", "base_range_start", "base_range_end", "base_range_unit"]
# Spherical Aggregate's inputs: the original seven, then the optional ones appended since
AGGREGATE_ORDER = ["mode", "window_unit", "window_start", "window_end", "initial_noise", "step_noise",
                   "normalize_weights"]
AGGREGATE_OPTIONAL = ["strength", "retained_share"]
COOPERATION_ORDERS = {
    "AMDM_ModelGuidance": ["form", "w", "window_unit", "window_start", "window_end"],
    "AMDM_Superposition": ["mode", "temperature"],
}


@pytest.fixture(scope="module")
def info(comfy_server):
    return comfy_server.object_info()


@pytest.mark.parametrize("node_id, display", sorted(NODES.items()))
def test_every_node_is_published_with_tooltips(info, node_id, display):
    n = info[node_id]
    assert n["display_name"] == display
    assert n["category"] == "sampling/amdm"
    assert n["python_module"].endswith("amdm_pack")
    assert len(n["description"]) > 40
    inputs = {**n["input"]["required"], **n["input"].get("optional", {})}
    for name, spec in inputs.items():
        assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert len(n["output_tooltips"]) == len(n["output"]) and all(n["output_tooltips"])


def test_sampler_input_order_and_host_lists(info, comfy_server):
    n = info["AMDM_MultiModelSampler"]
    assert n["input_order"]["required"] == SAMPLER_ORDER
    assert n["input_order"]["optional"] == SAMPLER_OPTIONAL
    ks = info["KSampler"]["input"]["required"]
    req = n["input"]["required"]
    # V3 combos are published as COMBO with their options: the host's own lists
    assert req["sampler_name"][1]["options"] == ks["sampler_name"][0]
    assert req["scheduler"][1]["options"] == ks["scheduler"][0]
    assert "euler_cfg_pp" in ks["sampler_name"][0] and "karras" in ks["scheduler"][0]
    assert n["output"] == ["LATENT", "STRING"]


def test_aggregate_inputs_only_appended_and_cooperation_nodes_share_the_socket(info):
    n = info["AMDM_SphericalAggregate"]
    assert n["input_order"]["required"] == AGGREGATE_ORDER
    assert n["input_order"]["optional"] == AGGREGATE_OPTIONAL
    assert n["input"]["optional"]["strength"][1]["options"] == ["per step", "per noise interval"]
    assert n["input"]["optional"]["strength"][1]["default"] == "per step"
    for node_id, order in COOPERATION_ORDERS.items():
        assert info[node_id]["input_order"]["required"] == order
        assert info[node_id]["output"] == n["output"] == ["AMDM_AGGREGATION"]
    assert info["AMDM_ModelGuidance"]["input"]["required"]["form"][1]["options"] == ["autoguidance", "autoguidance_cfg"]
    assert info["AMDM_Superposition"]["input"]["required"]["mode"][1]["options"] == ["or", "and"]
