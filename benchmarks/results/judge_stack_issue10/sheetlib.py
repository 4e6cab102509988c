import torch
from PIL import Image, ImageDraw
def sheet(imgs, labs, out, scale=3, cols=8):
    n = len(imgs); H, W = imgs[0].shape[1]*scale, imgs[0].shape[2]*scale
    rows = (n + cols - 1)//cols
    sh = Image.new('RGB', (cols*W, rows*(H+14)), 'white'); d = ImageDraw.Draw(sh)
    for i,(x,l) in enumerate(zip(imgs,labs)):
        r,c = divmod(i,cols)
        im = Image.fromarray((x.clamp(0,1).permute(1,2,0).numpy()*255).astype('uint8')).resize((W,H), Image.BILINEAR)
        sh.paste(im,(c*W, r*(H+14)+14)); d.text((c*W+2, r*(H+14)+1), l, fill='black')
    sh.save(out)
