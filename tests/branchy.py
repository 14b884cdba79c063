"""A small DARTS-like multi-branch model shared by the back-end tests."""
import torch
from torch import nn


class Branchy(nn.Module):
    """DARTS-like: input BN, stem, cat and + joins, avg/max pool k3, factorized reduce."""

    def __init__(self, cin=3, c=8, classes=3):
        super().__init__()
        self.input_bn = nn.BatchNorm1d(cin)
        self.stem = nn.Sequential(nn.Conv1d(cin, c, 3, padding=1, bias=False), nn.BatchNorm1d(c))
        self.op_a = nn.Sequential(nn.ReLU(), nn.Conv1d(c, c, 5, padding=2, bias=False), nn.BatchNorm1d(c))
        self.op_b = nn.MaxPool1d(3, 1, 1)
        self.op_c = nn.AvgPool1d(3, 1, 1, count_include_pad=False)
        self.op_d = nn.AvgPool1d(3, 1, 1)          # count_include_pad=True
        self.red1 = nn.Conv1d(2 * c, c, 1, stride=2, bias=False)
        self.red2 = nn.Conv1d(2 * c, c, 1, stride=2, bias=False)
        self.red_bn = nn.BatchNorm1d(2 * c)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * c, classes)

    def forward(self, x):
        s = self.stem(self.input_bn(x))
        n1 = torch.relu(self.op_a(s) + self.op_b(s))      # ReLU fused into the add
        y = torch.relu(torch.cat([n1, self.op_c(n1) + self.op_d(s)], dim=1))
        r = self.gap(self.red_bn(torch.cat([self.red1(y), self.red2(y)], dim=1)))
        return self.fc(r.view(r.size(0), -1))


def randomize_bn(model, seed=0):
    """Non-trivial batch-norm statistics and affine terms, eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()
