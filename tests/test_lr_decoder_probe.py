"The corrections of bench/lr_decoder_probe.py: each starts where it should, and its sign survives upsampling."

import torch

from repo_scripts import load_script

probe = load_script("bench/lr_decoder_probe.py")


def test_a_new_correction_leaves_the_output_as_it_is():
    "Its last layer starts at zero: every kind of correction returns the ×4 output unchanged (in [0, 1])."
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    for kind in ("lr", "hr", "both"):
        torch.testing.assert_close(probe.corrected(kind, probe.corrections(kind, 8, 3), y, x), y)


def test_a_new_res_correction_is_bicubic():
    "The `res` kind adds its correction to the input's bicubic upsampling: at the start its output is that, not y."
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    out = probe.corrected("res", probe.corrections("res", 8, 3), y, x)
    torch.testing.assert_close(out, probe.bicubic_up(x, (64, 64)))
    assert (out - y).abs().mean() > 0.1


def test_an_lr_correction_can_darken():
    "A negative correction at the input's resolution reaches the output (upsampling must not clamp it at 0)."
    net = probe.corrections("lr", 8, 3)
    torch.nn.init.constant_(net["lr"].net[-1].bias, -0.25)
    x, y = torch.full((1, 3, 16, 16), 0.5), torch.full((1, 3, 64, 64), 0.5)
    torch.testing.assert_close(probe.corrected("lr", net, y, x), torch.full_like(y, 0.25))


def test_a_correction_learns():
    "A few Adam steps on one batch lower the ℓ2 loss of an lr correction (the gradient reaches its layers)."
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 64, 64, generator=g)
    target = (y + 0.1).clamp(0, 1)
    net = probe.corrections("lr", 8, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = lambda: torch.nn.functional.mse_loss(probe.corrected("lr", net, y, x), target)
    first = loss().item()
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.5 * first


def test_flat_penalty_sees_strokes_on_flat_regions_only():
    "Strokes on a flat HR are penalised (with a gradient); a flat output, or any output where the HR is textured, not."
    hr = torch.full((1, 3, 64, 64), 0.5)
    out = hr.clone()
    out[..., 20:22, 10:50] = 0.9  # a bright stroke on the flat grey
    out.requires_grad_(True)
    p = probe.flat_penalty(out, hr)
    p.backward()
    assert p.item() > 0.005 and out.grad.abs().sum() > 0
    assert probe.flat_penalty(hr, hr).item() == 0
    textured = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert probe.flat_penalty(out.detach(), textured).item() == 0
